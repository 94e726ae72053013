"""Link, IP and TCP header decoding down to TCP segments."""
