"""``facevid review``: the local review page over a path lake (``cli`` the command, ``app`` the WSGI
routes, ``logic`` the pure rules, ``store`` the Delta I/O, ``leases`` the task leases, ``frames``
the JPEGs shown, ``static/`` the page itself)."""
