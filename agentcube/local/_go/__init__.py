"""Go, gin and net/http as the wire shows them: the one place the local services imitate the
Go runtime the real AgentCube is written in.

``stdlib`` (texts and formats of Go's standard library: quoting, durations, times, JSON,
file modes, paths, MIME types, base64), ``binding`` (gin's ``ShouldBindJSON`` with Go's error
texts), ``gin`` (requests, responses, gin's router and context, gzip, ``MaxBytesReader``),
``fileserver`` (``http.ServeFile``), ``multipart`` (``ParseMultipartForm``) and ``osexec``
(``os/exec``'s command lookup and environment). Nothing here imports the rest of
``agentcube.local``.
"""
