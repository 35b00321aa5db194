"""Tests of single steps and their on-demand commands (a package: module names never clash)."""
