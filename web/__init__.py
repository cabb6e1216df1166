"""The web pages people use: server-rendered, working without JavaScript.

``web.install(app)`` adds them to the API's app: the members' privacy centre
(``web.privacy``, ``/privacy/``) now, the staff console later, on the same
foundation: Jinja2 templates with Babel catalogues (``web.i18n``), cookies,
CSRF tokens and security headers (``web.security``), and one route class that
turns the use cases' errors into pages (``web.pages``). Every page calls the
same use cases (``gate.*``) as the API: no second business logic here.
"""

from web.setup import install

__all__ = ["install"]
