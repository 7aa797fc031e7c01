"""One router per concern. ``ROUTERS`` are the API (with ``require_key_for_reads`` every route of
theirs needs the X-API-Key); ``OPEN_ROUTERS`` (health, readiness, metrics, the web page, the API's
documentation pages) never do: probes and scrapers send no key, and the pages hold none."""

from service.routes import admin, classify, docs, gallery, health, models, similar, web

ROUTERS = (classify.router, similar.router, gallery.router, models.router, admin.router)
OPEN_ROUTERS = (health.router, web.router, docs.router)
