"""App shapes taken from public Heroku apps (their Procfile/app.json/heroku.yml shapes, not
their code), each with the manifest properties and findings the translation must produce.

Where each shape comes from is in ``origin``: the public file pattern it reproduces (found with
code search over public repositories: Procfiles of Rails/Sidekiq, Django/Celery, FastAPI,
Laravel, Phoenix, Spring Boot, Express apps; app.json "Deploy to Heroku" buttons; heroku.yml
Docker deploys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Shape:
    name: str
    origin: str
    files: dict[str, str]
    facts: dict[str, Any] | None = None  # LiveFacts keyword arguments
    expect: dict[str, Any] = field(default_factory=dict)  # dotted manifest path -> value
    codes: tuple[str, ...] = ()  # finding codes that must be present
    not_codes: tuple[str, ...] = ()  # finding codes that must be absent
    options: dict[str, Any] = field(default_factory=dict)  # TranslateOptions keywords


_RAILS_GEMFILE = "source 'https://rubygems.org'\ngem 'rails', '~> 7.1'\ngem 'pg'\ngem 'puma'\n"
_PG = {"heroku-postgresql": ("DATABASE_URL",)}

CORPUS: tuple[Shape, ...] = (
    # ---------------------------------------------------------------- Rails
    Shape(
        "rails-puma-sidekiq-release",
        "Rails apps: `web: bundle exec puma -C config/puma.rb`, `worker: bundle exec sidekiq -C "
        "config/sidekiq.yml`, `release: bin/rails db:migrate`",
        {
            "Procfile": "web: bundle exec puma -C config/puma.rb\n"
            "worker: bundle exec sidekiq -C config/sidekiq.yml\n"
            "release: bin/rails db:migrate\n",
            "Gemfile": _RAILS_GEMFILE + "gem 'sidekiq'\n",
        },
        expect={
            "services.web.command": "bundle exec puma -C config/puma.rb",
            "services.web.initContainer.command": "bin/rails db:migrate",
            "services.worker.command": "bundle exec sidekiq -C config/sidekiq.yml",
        },
        codes=("release-init-container", "port-assumed", "dockerfile-needed"),
    ),
    Shape(
        "rails-server-port-env",
        "Rails: `web: bundle exec rails server -p $PORT -e $RAILS_ENV`",
        {
            "Procfile": "web: bundle exec rails server -p $PORT -e $RAILS_ENV\n",
            "Gemfile": _RAILS_GEMFILE,
        },
        expect={
            "services.web.command": "sh -c 'exec bundle exec rails server -p 3000 -e $RAILS_ENV'"
        },
        codes=("boot-variable-default", "port-fixed"),
    ),
    Shape(
        "rails-no-procfile-buildpack-default",
        "heroku-buildpack-ruby default process type for Rails 4+ (no Procfile)",
        {
            "Gemfile": _RAILS_GEMFILE,
            "bin/rails": "#!/usr/bin/env ruby\n",
            "config.ru": "run Rails.application\n",
        },
        expect={
            "services.web.port": 5000,
            "services.web.command": "sh -c 'exec bin/rails server -p 5000 -e $RAILS_ENV'",
        },
        codes=("processes-from-buildpack",),
    ),
    Shape(
        "rails-postgis",
        "Rails on PostGIS: Gemfile activerecord-postgis-adapter, database.yml adapter: postgis",
        {
            "Procfile": "web: bundle exec puma -p $PORT\n",
            "Gemfile": _RAILS_GEMFILE + "gem 'activerecord-postgis-adapter'\n",
            "config/database.yml": "production:\n  adapter: postgis\n"
            "  url: <%= ENV['DATABASE_URL'] %>\n",
            "db/schema.rb": 'ActiveRecord::Schema[7.1].define do\n  enable_extension "postgis"\n'
            '  enable_extension "plpgsql"\nend\n',
        },
        facts={
            "app": "atlas",
            "postgres_version": "15",
            "addons": [
                ("heroku-postgresql", "heroku-postgresql:standard-0", _PG["heroku-postgresql"])
            ],
            "config_var_names": ["DATABASE_URL", "SECRET_KEY_BASE"],
        },
        expect={
            "resources.database.type": "postgis",
            "resources.database.options.version": "15-3.4",
        },
        codes=("postgres-postgis",),
    ),
    Shape(
        "rails-app-json-button",
        "app.json deploy buttons: env with generator secret, addons as strings, formation, "
        "scripts.postdeploy",
        {
            "Procfile": "web: bin/rails server -p $PORT\nworker: bundle exec good_job start\n",
            "Gemfile": _RAILS_GEMFILE,
            "app.json": '{"name": "Blog", "env": {"SECRET_KEY_BASE": {"generator": "secret"}, '
            '"RAILS_ENV": "production", "SMTP_HOST": {"required": false}}, '
            '"addons": ["heroku-postgresql:essential-0", "sendgrid:starter"], '
            '"formation": {"web": {"quantity": 1, "size": "basic"}, "worker": {"quantity": 1, '
            '"size": "basic"}}, "scripts": {"postdeploy": "bin/rails db:schema:load"}}',
        },
        expect={
            "services.web.scale": {"count": 1, "cpu": 250, "memory": 512},
            "resources.database.type": "postgres",
        },
        codes=("env-generate-secret", "addon-unmapped", "env-optional-omitted"),
    ),
    Shape(
        "rails-nginx-buildpack",
        "heroku-buildpack-nginx: `web: bin/start-nginx bundle exec puma -C config/puma.rb`",
        {
            "Procfile": "web: bin/start-nginx bundle exec puma -C config/puma.rb\n",
            "Gemfile": _RAILS_GEMFILE,
        },
        codes=("command-buildpack-script",),
    ),
    Shape(
        "rails-foreman-nested",
        "apps running foreman as the web command with a nested Procfile.web",
        {
            "Procfile": "web: bundle exec foreman start -f Procfile.web\n",
            "Procfile.web": "puma: bundle exec puma -p $PORT\nanycable: anycable-go --port 8080\n",
            "Gemfile": _RAILS_GEMFILE,
        },
        codes=("process-manager",),
    ),
    # ---------------------------------------------------------------- Python
    Shape(
        "django-migrate-and-gunicorn",
        "issue 8 case 1: `web: python manage.py migrate --noinput && gunicorn config.wsgi "
        "--bind 0.0.0.0:$PORT`",
        {
            "Procfile": "web: python manage.py migrate --noinput && gunicorn config.wsgi "
            "--bind 0.0.0.0:$PORT\n",
            "requirements.txt": "django\ngunicorn\n",
        },
        expect={
            "services.web.command": "sh -c 'python manage.py migrate --noinput && exec "
            "gunicorn config.wsgi --bind 0.0.0.0:3000'"
        },
    ),
    Shape(
        "django-celery-beat",
        "Django + Celery: `worker: celery -A proj worker -l info`, `beat: celery -A proj beat`",
        {
            "Procfile": "web: gunicorn proj.wsgi --log-file -\n"
            "worker: celery -A proj worker -l info --concurrency ${CELERY_CONCURRENCY:-2}\n"
            "beat: celery -A proj beat -l info\nrelease: python manage.py migrate\n",
            "requirements.txt": "django\ncelery\nredis\n",
        },
        facts={
            "app": "shop",
            "addons": [("heroku-redis", "heroku-redis:mini", ("REDIS_URL",))],
            "config_var_names": ["REDIS_URL", "DJANGO_SECRET_KEY"],
        },
        expect={
            "services.beat.singleton": True,
            # gunicorn sizes itself from WEB_CONCURRENCY, set at boot by the buildpack
            "environment": ["DJANGO_SECRET_KEY", "CELERY_CONCURRENCY=2", "WEB_CONCURRENCY=2"],
        },
        codes=("singleton", "command-env-default", "redis-version", "boot-variable-default"),
    ),
    Shape(
        "fastapi-uvicorn-port-fallback",
        "FastAPI: `web: uvicorn main:app --host=0.0.0.0 --port=${PORT:-5000}`",
        {
            "Procfile": "web: uvicorn main:app --host=0.0.0.0 --port=${PORT:-5000}\n",
            "requirements.txt": "fastapi\nuvicorn\n",
        },
        expect={
            "services.web.port": 5000,
            "services.web.command": "uvicorn main:app --host=0.0.0.0 --port=5000",
        },
        codes=("port-from-command",),
    ),
    Shape(
        "python-http-server-comment",
        "issue 8 case 2: `web: python -m http.server $PORT # static files`",
        {"Procfile": "web: python -m http.server $PORT # static files\n", "requirements.txt": ""},
        expect={"services.web.command": "python -m http.server 3000"},
        codes=("command-comment",),
    ),
    Shape(
        "flask-source-setenv",
        "issue 8 case 3: `web: source bin/setenv.sh && exec gunicorn app:app`",
        {
            "Procfile": "web: source bin/setenv.sh && exec gunicorn app:app --bind 0.0.0.0:$PORT\n"
            'worker: [[ -n "$QUEUES" ]] && exec rq worker $QUEUES || exec rq worker default\n',
            "requirements.txt": "flask\nrq\n",
        },
        facts={"app": "flasky", "config_var_names": ["QUEUES"]},
        codes=("command-needs-bash",),
    ),
    Shape(
        "python-pgvector",
        "Python RAG apps: requirements pgvector, app.json heroku-postgresql with options.version",
        {
            "Procfile": "web: gunicorn app:app --workers $WEB_CONCURRENCY\n",
            "requirements.txt": "flask\npsycopg[binary]\npgvector\n",
            "app.json": '{"addons": [{"plan": "heroku-postgresql:essential-0", '
            '"options": {"version": "16"}}]}',
        },
        expect={
            "resources.database.image": "pgvector/pgvector:pg16",
            "resources.database.options.version": "16",
        },
        codes=("postgres-pgvector", "boot-variable-default"),
    ),
    Shape(
        "geodjango",
        "GeoDjango: settings ENGINE django.contrib.gis.db.backends.postgis",
        {
            "Procfile": "web: gunicorn geo.wsgi\n",
            "requirements.txt": "django\n",
            "geo/settings.py": 'DATABASES = {"default": {"ENGINE": '
            '"django.contrib.gis.db.backends.postgis"}}\n',
            "app.json": '{"addons": ["heroku-postgresql"]}',
        },
        expect={"resources.database.type": "postgis"},
        codes=("postgres-postgis", "postgres-version-unknown"),
    ),
    Shape(
        "python-no-procfile",
        "heroku-buildpack-python declares no default process type: nothing to run",
        {"requirements.txt": "flask\n", "app.py": "print('hi')\n"},
        expect={"error": "Procfile"},
    ),
    # ---------------------------------------------------------------- Node
    Shape(
        "node-npm-start-default",
        "Express apps without a Procfile: heroku-buildpack-nodejs runs `npm start`",
        {
            "package.json": '{"name": "api", "scripts": {"start": "node server.js"}, '
            '"engines": {"node": "20.x"}}',
            "server.js": "require('http')\n",
        },
        expect={"services.web.command": "npm start"},
        codes=("processes-from-buildpack", "port-assumed"),
    ),
    Shape(
        "node-memory-available",
        "Node apps sizing the heap: `web: node --max-old-space-size=$MEMORY_AVAILABLE index.js`",
        {
            "Procfile": "web: node --max-old-space-size=$MEMORY_AVAILABLE index.js\n"
            "worker: node worker.js\n",
            "package.json": '{"name": "x"}',
        },
        expect={"environment": ["MEMORY_AVAILABLE=512"]},
        codes=("boot-variable-default",),
    ),
    Shape(
        "node-npm-run-scripts",
        "`web: npm run start:prod`, `worker: npm run worker`, `release: npx prisma migrate deploy`",
        {
            "Procfile": "web: npm run start:prod\nworker: npm run worker\n"
            "release: npx prisma migrate deploy\n",
            "package.json": '{"name": "nest"}',
        },
        expect={"services.web.initContainer.command": "npx prisma migrate deploy"},
        codes=("release-init-container",),
    ),
    Shape(
        "node-dyno-name",
        "apps logging the dyno name: `web: node app.js --instance $DYNO`",
        {"Procfile": "web: node app.js --instance $DYNO\n", "package.json": "{}"},
        codes=("boot-variable-missing",),
    ),
    Shape(
        "node-pipe-to-logger",
        "`web: node server.js | pino-pretty` (a pipeline cannot be exec'd)",
        {
            "Procfile": "web: node server.js 2>&1 | ./node_modules/.bin/pino-pretty\n",
            "package.json": "{}",
        },
        codes=("command-no-exec",),
    ),
    Shape(
        "node-heroku-yml-docker",
        "heroku.yml Docker deploys: build.docker.web, run.web with a list command, release",
        {
            "heroku.yml": "build:\n  docker:\n    web: Dockerfile\nrelease:\n  image: web\n"
            "  command:\n    - npm run migrate\nrun:\n  web: npm start\n  worker:\n"
            "    command:\n      - node\n      - worker.js\n    image: web\n",
            "Dockerfile": "FROM node:20\n",
        },
        expect={
            "services.web.build": ".",
            "services.worker.command": "node worker.js",
            "services.web.initContainer.command": "npm run migrate",
        },
    ),
    # ---------------------------------------------------------------- PHP
    Shape(
        "laravel-apache-queue",
        "Laravel: `web: vendor/bin/heroku-php-apache2 public/`, "
        "`worker: php artisan queue:restart && php artisan queue:work`",
        {
            "Procfile": "web: vendor/bin/heroku-php-apache2 public/\n"
            "worker: php artisan queue:restart && php artisan queue:work database --tries=5\n",
            "composer.json": '{"require": {"php": "^8.2"}}',
        },
        expect={
            "services.worker.command": "sh -c 'php artisan queue:restart && exec php "
            "artisan queue:work database --tries=5'"
        },
        codes=("command-buildpack-script",),
    ),
    Shape(
        "php-no-procfile",
        "heroku-buildpack-php default: `web: heroku-php-apache2`",
        {"composer.json": "{}", "index.php": "<?php echo 1;\n"},
        expect={"services.web.command": "heroku-php-apache2"},
        codes=("processes-from-buildpack", "command-buildpack-script"),
    ),
    Shape(
        "php-jawsdb-memcachier",
        "PHP apps on JawsDB MySQL and MemCachier (app.json addons)",
        {
            "Procfile": "web: vendor/bin/heroku-php-nginx -C nginx.conf public/\n",
            "composer.json": "{}",
            "app.json": '{"addons": ["jawsdb:kitefin", "memcachier:dev"]}',
        },
        expect={"resources.jawsdb.type": "mysql", "resources.memcachier.type": "memcached"},
        codes=("addon-vars-differ",),
    ),
    # ---------------------------------------------------------------- Go
    Shape(
        "go-module-default",
        "heroku-buildpack-go default process type bin/NAME",
        {"go.mod": "module github.com/acme/hello\n\ngo 1.22\n", "main.go": "package main\n"},
        expect={"services.web.command": "bin/hello"},
        codes=("processes-from-buildpack",),
    ),
    Shape(
        "go-procfile-flags",
        "Go: `web: bin/server -port=$PORT -env production`",
        {"Procfile": "web: bin/server -port=$PORT -env production\n", "go.mod": "module x\n"},
        expect={"services.web.command": "bin/server -port=3000 -env production"},
    ),
    # ---------------------------------------------------------------- Elixir
    Shape(
        "phoenix-mix-env",
        "Phoenix: `web: MIX_ENV=prod mix phx.server`, release with `|| true &&` chains",
        {
            "Procfile": "release: MIX_ENV=prod mix do ecto.create || true && mix ecto.migrate\n"
            "web: MIX_ENV=prod mix phx.server\n",
            "mix.exs": "defmodule X.MixProject do\nend\n",
            "elixir_buildpack.config": "erlang_version=26\n",
        },
        expect={"services.web.command": "env MIX_ENV=prod mix phx.server"},
        codes=("command-env-prefix",),
    ),
    Shape(
        "elixir-no-procfile",
        "heroku-buildpack-elixir default `mix run --no-halt`",
        {"mix.exs": "defmodule Y.MixProject do\nend\n"},
        expect={"services.web.command": "mix run --no-halt"},
        codes=("processes-from-buildpack",),
    ),
    # ---------------------------------------------------------------- Java
    Shape(
        "spring-boot-jar-glob",
        "Spring Boot: `web: java -Dserver.port=$PORT $JAVA_OPTS -jar target/*.jar`",
        {
            "Procfile": "web: java -Dserver.port=$PORT $JAVA_OPTS -jar target/*.jar\n",
            "pom.xml": "<project><parent><artifactId>spring-boot-starter-parent</artifactId>"
            "</parent></project>",
            "system.properties": "java.runtime.version=17\n",
        },
        expect={
            "services.web.command": "sh -c 'exec java -Dserver.port=3000 $JAVA_OPTS -jar "
            "target/*.jar'"
        },
        codes=("boot-variable-default",),
    ),
    Shape(
        "gradle-no-procfile",
        "heroku-buildpack-gradle Spring Boot default process type",
        {
            "build.gradle": "plugins { id 'org.springframework.boot' version '3.2.0' }\n"
            "// spring-boot\n"
        },
        expect={
            "services.web.command": "sh -c 'exec java -Dserver.port=3000 $JAVA_OPTS -jar "
            "build/libs/*.jar'"
        },
        codes=("processes-from-buildpack",),
    ),
    Shape(
        "java-webapp-runner-war",
        "`web: java $JAVA_OPTS -jar target/dependency/webapp-runner.jar --port $PORT target/*.war`",
        {
            "Procfile": (
                "web: java $JAVA_OPTS -jar target/dependency/webapp-runner.jar "
                "--port $PORT target/*.war\n"
            ),
            "pom.xml": "<project/>",
        },
        expect={"services.web.port": 3000},
        codes=("boot-variable-default", "port-fixed"),
    ),
    # ---------------------------------------------------------------- live facts
    Shape(
        "container-stack-pushed-images",
        "issue 8 case 5: container:push / container:release apps without heroku.yml",
        {"Dockerfile": "FROM python:3.12\n", "Procfile": "web: gunicorn app:app\n"},
        facts={
            "app": "pix",
            "stack": "container",
            "formation": [("web", 2, "standard-1X"), ("worker", 1, "standard-1X")],
        },
        expect={
            "services.web.image": "registry.heroku.com/pix/web:latest",
            "services.worker.scale.count": 1,
        },
        codes=("container-image", "procfile-ignored"),
    ),
    Shape(
        "rediscloud-addon",
        "apps on Redis Cloud (REDISCLOUD_URL) and Papertrail",
        {
            "Procfile": "web: bundle exec puma\nworker: bundle exec sidekiq\n",
            "Gemfile": _RAILS_GEMFILE,
        },
        facts={
            "app": "cloudy",
            "addons": [
                ("rediscloud", "rediscloud:30", ("REDISCLOUD_URL",)),
                ("papertrail", "papertrail:choklad", ("PAPERTRAIL_API_TOKEN",)),
            ],
            "config_var_names": ["REDISCLOUD_URL", "PAPERTRAIL_API_TOKEN", "SECRET_KEY_BASE"],
        },
        expect={"resources.rediscloud.type": "redis", "services.worker.resources": ["rediscloud"]},
        codes=("addon-mapped", "addon-unmapped"),
    ),
    Shape(
        "multi-procfile-monorepo",
        "monorepo apps: process types in folders, `web: cd api && npm start`",
        {
            "Procfile": "web: cd api && npm start\nworker: cd jobs && node index.js\n",
            "package.json": "{}",
        },
        expect={
            "services.web.command": "sh -c 'cd api && exec npm start'",
            "services.worker.command": "sh -c 'cd jobs && exec node index.js'",
        },
    ),
    Shape(
        "multi-procfile-buildpack-app-json",
        "heroku-buildpack-multi-procfile: app.json env PROCFILE names the Procfile to run",
        {
            "Procfile": "web: echo wrong\n",
            "apps/api/Procfile": "web: bundle exec puma -p $PORT\nworker: bundle exec sidekiq\n",
            "Gemfile": _RAILS_GEMFILE,
            "app.json": '{"env": {"PROCFILE": {"value": "apps/api/Procfile"}}, "buildpacks": '
            '[{"url": "https://github.com/heroku/heroku-buildpack-multi-procfile"}, '
            '{"url": "heroku/ruby"}]}',
        },
        expect={
            "services.web.command": "bundle exec puma -p 3000",
            "services.worker.command": "bundle exec sidekiq",
        },
        codes=("procfile-elsewhere",),
    ),
    Shape(
        "multi-procfile-live-only",
        "apps with a PROCFILE config var set on the dashboard (value not in the sources)",
        {"Procfile": "web: node server.js\n", "package.json": "{}"},
        facts={"app": "mono", "config_var_names": ["PROCFILE", "NODE_ENV"]},
        codes=("procfile-pointer",),
    ),
    Shape(
        "django-ssl-require",
        "Django on Heroku: dj_database_url.config(conn_max_age=600, ssl_require=True)",
        {
            "Procfile": "web: gunicorn site.wsgi\n",
            "requirements.txt": "django\n",
            "site/settings.py": "DATABASES = {'default': dj_database_url.config("
            "conn_max_age=600, ssl_require=True)}\n",
            "app.json": '{"addons": [{"plan": "heroku-postgresql", "options": {"version": "16"}}]}',
        },
        expect={"resources.database.options.version": "16"},
        codes=("postgres-tls-required",),
    ),
    # ------------------------------------------------- found by the review (public Procfiles)
    Shape(
        "fastapi-exec-uvicorn",
        "FastAPI apps: `web: exec uvicorn app.main:app --host 0.0.0.0 --port $PORT "
        "--timeout-graceful-shutdown 20` (exec is a bash builtin; no image has a program `exec`)",
        {
            "Procfile": "web: exec uvicorn app.main:app --host 0.0.0.0 --port $PORT "
            "--timeout-graceful-shutdown 20\nworker: python -m app.worker\n",
            "requirements.txt": "fastapi\nuvicorn\n",
        },
        expect={
            "services.web.command": "uvicorn app.main:app --host 0.0.0.0 --port 3000 "
            "--timeout-graceful-shutdown 20"
        },
        codes=("command-exec-dropped", "port-fixed"),
    ),
    Shape(
        "nextjs-bare-next-prisma-release",
        "Next.js apps: `web: next start -p $PORT`, `release: npx prisma generate && npx prisma "
        "migrate deploy` (next is on a dyno's PATH through node_modules/.bin)",
        {
            "Procfile": "web: next start -p $PORT\n"
            "release: npx prisma generate && npx prisma migrate deploy\n",
            "package.json": '{"dependencies": {"next": "14.2.0", "@prisma/client": "5"}, '
            '"devDependencies": {"prisma": "5"}}',
        },
        expect={
            "services.web.command": "next start -p 3000",
            "services.web.initContainer.command": (
                "sh -c 'npx prisma generate && exec npx prisma migrate deploy'"
            ),
        },
        codes=("command-node-bin", "release-init-container"),
    ),
    Shape(
        "php-home-relative-scripts",
        "PHP apps generated by a setup script: `web: ~/web-boot.sh`, `worker: while true; do "
        "php ~/update.php --feeds; sleep 300; done` (~ is /app on a dyno)",
        {
            "Procfile": "web: ~/web-boot.sh\n"
            "worker: while true; do php ~/update.php --feeds; sleep 300; done\n",
            "composer.json": "{}",
        },
        expect={"services.web.command": "sh -c 'exec ~/web-boot.sh'"},
        codes=("boot-home", "command-no-exec", "command-shell"),
    ),
    Shape(
        "rq-queues-then-branch",
        'RQ/Sidekiq apps choosing queues at boot: `worker: test -n "$QUEUES" && rq worker '
        "$QUEUES || rq worker default` (issue 8's `[[ ]]` line, POSIX form, without exec)",
        {
            "Procfile": "web: gunicorn app:app\n"
            'worker: test -n "$QUEUES" && rq worker $QUEUES || rq worker default\n',
            "requirements.txt": "flask\nrq\n",
        },
        facts={"app": "rq-app", "config_var_names": ["QUEUES"]},
        expect={
            "services.worker.command": 'sh -c \'test -n "$QUEUES" && exec rq worker '
            "$QUEUES || exec rq worker default'"
        },
        codes=("command-shell",),
        not_codes=("command-no-exec",),
    ),
    Shape(
        "rails-profile-exports",
        "apps with a committed .profile (Dev Center, Dyno Startup Behavior: `export "
        "PATH=$PATH:$HOME/vendor/bin`) that the command relies on",
        {
            "Procfile": "web: bundle exec puma -C config/puma.rb\n",
            ".profile": "export PATH=$PATH:$HOME/vendor/bin\nexport LANG=${LANG:-en_US.UTF-8}\n",
            "Gemfile": _RAILS_GEMFILE,
        },
        codes=("profile-script",),
    ),
)
