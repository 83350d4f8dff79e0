"""`mtkit serve`: a web page and JSON API that translate with trained runs and show where they look.

`service.py` does the work and returns plain dicts; `app.py` maps it to HTTP routes and runs the
server; `static/` is the page (hand-written HTML, CSS, JS and SVG; no build step, nothing fetched
from elsewhere).
"""
