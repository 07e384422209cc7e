"""The WSGI ``application``: for any WSGI server, or mounted under a prefix in an ASGI app
(``Mount("/django", app=WSGIMiddleware(application))`` with a2wsgi; links follow the
prefix, since the templates build them with ``{% url %}``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

application = get_wsgi_application()
