"""Policies: schema (``schema``), loading with precise errors (``loader``),
compiled form (``model``) and hot reload (``store``)."""
