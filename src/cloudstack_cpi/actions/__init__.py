"""BOSH CPI methods, one module per resource group.  Handlers take a CallContext then the request's arguments."""
