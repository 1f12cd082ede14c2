"""gRPC servicers Envoy calls: ext_authz and ext_proc."""
