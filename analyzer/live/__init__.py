"""Live monitoring: dumpcap feeding the offline pipeline, with rotation, alerts, health."""
