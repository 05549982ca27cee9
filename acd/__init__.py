"""Call routing: dialplan, IVR flows, queues, agents, supervisor actions."""
