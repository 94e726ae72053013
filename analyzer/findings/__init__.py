"""Security findings: rules over associations, messages and anomalies, and their outputs."""
