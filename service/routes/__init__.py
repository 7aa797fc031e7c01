"""One router per concern. ``ROUTERS`` are the API (with ``require_key_for_reads`` every route of
theirs needs the X-API-Key); ``OPEN_ROUTERS`` (health, readiness, metrics, the web page) never do:
probes and scrapers send no key, and the page holds none."""

from service.routes import admin, classify, gallery, health, models, similar, web

ROUTERS = (classify.router, similar.router, gallery.router, models.router, admin.router)
OPEN_ROUTERS = (health.router, web.router)
