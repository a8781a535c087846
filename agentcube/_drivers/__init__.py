"""The drivers: they perform the steps of a flow (:mod:`agentcube._protocol`) and send bytes.

- :mod:`._sync`: the requests driver (send loop, :func:`~._sync.run`) the sync clients use.
- :mod:`._async`: the aiohttp twin for the async clients; imported only by them (aiohttp is an
  optional extra), never from here.
- What the sync driver relies on, each in a small module of its own: :mod:`._pool` (the
  process-wide urllib3 keep-alive pool), :mod:`._watchdog` (the thread that bounds an
  attempt in all), :mod:`._environment` (the memo of what the environment adds to a request,
  and sessions built without requests' default adapters).
- :mod:`._responses`: the detached, scrubbed responses both drivers hand to errors.

The drivers import nothing from :mod:`agentcube.auth`: a provider's bearer header comes from
:mod:`agentcube._credentials`.
"""
