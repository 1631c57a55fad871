"""Stand-ins for the exchanges we trade on, speaking their real protocols (see loopback)."""
