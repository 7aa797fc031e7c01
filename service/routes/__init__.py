"""One router per concern; ``ROUTERS`` is what the app includes."""

from service.routes import classify, gallery, health, models, similar

ROUTERS = (classify.router, similar.router, gallery.router, models.router, health.router)
