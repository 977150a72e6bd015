"""``taskmill serve``: the web dashboard (task graph, attempts, live view) and its JSON API.

:func:`taskmill.web.app.create_app` builds the Starlette application; the API handlers in
:mod:`taskmill.web.api` call the :class:`~taskmill.ledger.Ledger`; the graph is laid out on
the server by :mod:`taskmill.web.graph_layout`; the page is plain HTML, CSS and JavaScript in
``static/`` (no build step).
"""
