from django.apps import AppConfig


class HitsConfig(AppConfig):
    name = "django_site.hits"
    label = "hits"
