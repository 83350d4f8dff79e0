"""`mtkit serve`: a web page and JSON API that translate with trained runs and show where they look.

`service.py` does the work and returns plain dicts; `guard.py` is what every request passes first
(Host, Content-Type, body size) and every answer carries (CSP, nosniff); `queue.py` runs each
model's translations on a bounded queue of its own; `app.py` maps it all to HTTP routes and runs the
server; `static/` is the page (hand-written HTML, CSS, JavaScript modules and SVG; no build step,
nothing fetched from elsewhere).
"""
