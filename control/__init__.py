"""scrm-fast's control plane: an aiohttp service over the tenant's archive (auth, data
scopes, the access trail, archive views, review queues, consent, words). Start it with
``scrm serve --data DIR``; build it with :func:`control.app.create_app`."""
