"""A small Django site on FerriteCache: see example_projects/django_site/README.md."""
