"""An xDS control plane: policy compiled to Envoy-native filters where no
Python is needed on the request path, served to Envoys over ADS.

``compiler`` turns a loaded ``PolicySet`` into a versioned ``Snapshot`` of
Envoy v3 resources (listener, routes, clusters) and a per-route plan of what
runs natively and what stays in the processor; ``server`` serves snapshots
over the Aggregated Discovery Service. See docs/xds.md.
"""
