"""Every operation the SDK performs, as a flow (see :mod:`agentcube._protocol`), by domain.

One place for each rule: the request (path, body, headers, timeouts, how it may be retried),
its validation before anything is sent, and how the answer becomes a result or an error. The
sync and the async clients, and the low-level clients of :mod:`agentcube.clients`, run these
same flows; only the driver differs. Flows do no I/O: they yield ``Call`` and ``Local`` steps.

- :mod:`.control_plane`: create and delete sessions through the WorkloadManager.
- :mod:`.agent_runtime`: bootstrap a session through the Router and invoke the agent.
- :mod:`.commands`: ``api/execute``, shell commands under a deadline, background processes.
- :mod:`.files`: upload (in parts when large), write, download and list files.
- :mod:`.code`: run code in a language (write the script, then run it).
- :mod:`._common`: what they share (``RouterTarget``, ``Executed``, reading answers);
  :mod:`._go`: Go's formats (durations, file modes).
"""
