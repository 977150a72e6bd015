"""``taskmill serve``: the web dashboard (task graph, attempts, live view) and its JSON API.

:func:`taskmill.web.app.create_app` builds the Starlette application; the API handlers
(:class:`taskmill.web.api.Api`, in groups: :mod:`~taskmill.web.reads`,
:mod:`~taskmill.web.actions`, :mod:`~taskmill.web.mill_state`, :mod:`~taskmill.web.live`) call
the :class:`~taskmill.ledger.Ledger`; the routes are declared in :mod:`taskmill.web.routes`
and described by :mod:`taskmill.web.openapi` (its schemas from the records and
:mod:`taskmill.web.responses`); the graph is laid out on
the server by :mod:`taskmill.web.graph_layout`; the page is plain HTML, CSS and JavaScript in
``static/`` (no build step).
"""
