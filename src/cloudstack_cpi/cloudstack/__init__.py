"""The CloudStack API: signing, transport, async jobs, typed errors.  Knows nothing of BOSH."""
