"""One router per concern. ``ROUTERS`` are the API (with ``require_key_for_reads`` every route of
theirs needs the X-API-Key); ``OPEN_ROUTERS`` (health, readiness, metrics) never do: probes and
scrapers send no key."""

from service.routes import admin, classify, gallery, health, models, similar

ROUTERS = (classify.router, similar.router, gallery.router, models.router, admin.router)
OPEN_ROUTERS = (health.router,)
