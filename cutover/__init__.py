"""cutover: move a running application from Heroku to Convox in one resumable, auditable run."""

__version__ = "0.1.0"
