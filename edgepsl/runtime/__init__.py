"""The runtime: coordinator, helper daemon and client agent training a split model together over the wire."""
