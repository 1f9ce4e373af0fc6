"""Django settings of the test project: PostgreSQL in the test's own schema, Crisper's app."""

import os

SECRET_KEY = "tests-only"
USE_TZ = True
INSTALLED_APPS = ["crisper.contrib.django", "tests.djangoproj.shop"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "test",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "OPTIONS": {"options": f"-c search_path={os.environ['DJANGO_TEST_SCHEMA']}"},
    }
}
CRISPER = {
    "APP": "tests.djangoproj.jobs:crisper",
    "BROKER_URL": os.environ["CRISPER_BROKER_URL"],
    "BROKER_PREFIX": os.environ.get("CRISPER_BROKER_PREFIX", ""),
}
ROOT_URLCONF = "tests.djangoproj.urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
