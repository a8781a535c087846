"""Agent runtime: bootstrap a session, invoke the agent, attach a second client, release it.

With WORKLOAD_MANAGER_URL / ROUTER_URL set, this talks to that AgentCube; with neither set, it
starts the local AgentCube (agentcube.local) in this process and runs against it.
AGENT_NAME picks the agent (default: the local server's built-in "echo-agent").
"""

from __future__ import annotations

import os

from agentcube import AgentRuntimeClient, StopOutcome
from agentcube.local import configured_or_local


def main() -> None:
    agent = os.environ.get("AGENT_NAME", "echo-agent")
    with configured_or_local():
        owner = AgentRuntimeClient(agent)  # bootstraps a session: this client owns it
        with owner:
            print(f"owner session {owner.session_id} (owns_session={owner.owns_session})")
            print("invoke ->", owner.invoke({"prompt": "hello"}))

            # A second client attached to the same session: its stop() must keep the session.
            second = AgentRuntimeClient(agent, session_id=owner.session_id)
            print("attached invoke ->", second.invoke({"prompt": "again"}, path="chat"))
            outcome = second.stop()
            print(f"attached client stop() -> {outcome.value}")
            assert outcome is StopOutcome.KEPT
            print("owner still works ->", owner.invoke({"prompt": "still there?"}))
        # Leaving the `with` block called owner.stop(), which deleted the owned session.
        print(f"owner stop() -> {owner.stop().value} (already done by `with`)")


if __name__ == "__main__":
    main()
