"""How long async jobs (and template processing) take: named timing profiles.

``instant`` finishes every job at once (still through the job table); ``realistic`` gives each async command the
duration it has on a KVM cloud, per variant where the real work differs (a VM deployed Stopped, a volume attached
to a running VM, a destroy that expunges...).  docs/simulator.md ("Timing profiles") gives every figure and where
it comes from.  ``scale`` multiplies every duration, so benchmarks keep realistic ratios in less time; a single
``job_seconds`` override (``Simulator(job_seconds=...)``) replaces the profile for every job, as before.
"""
from __future__ import annotations

# Keys are "<command>" or "<command>:<variant>"; a variant without its own figure falls back to the command's.
REALISTIC: dict[str, float] = {
    # virtual machines
    "deployVirtualMachine": 30.0,
    "deployVirtualMachine:stopped": 1.0,
    "startVirtualMachine": 20.0,
    "startVirtualMachine:first": 29.0,
    "stopVirtualMachine": 10.0,
    "rebootVirtualMachine": 8.0,
    "destroyVirtualMachine": 12.0,
    "destroyVirtualMachine:expunge": 20.0,
    "expungeVirtualMachine": 10.0,
    # volumes
    "createVolume": 1.0,
    "createVolume:snapshot": 30.0,
    "attachVolume:stopped": 2.0,
    "attachVolume:running": 8.0,
    "detachVolume:stopped": 1.0,
    "detachVolume:running": 6.0,
    "resizeVolume": 5.0,
    "resizeVolume:allocated": 1.0,
    # snapshots and templates
    "createSnapshot": 60.0,
    "deleteSnapshot": 5.0,
    "createTemplate": 60.0,
    "createTemplate:volume": 90.0,
    "copyTemplate": 120.0,
    "deleteTemplate": 5.0,
    "extractTemplate": 10.0,
    "registerTemplate:install": 20.0,     # bytes downloaded -> "Download Complete" (not a job: listTemplates status)
    "upload:install": 20.0,               # POSTed bytes received -> "Download Complete"
    # tags, affinity groups: database work only
    "createTags": 0.5,
    "deleteTags": 0.5,
    "createAffinityGroup": 0.5,
    "deleteAffinityGroup": 0.5,
    # network rules: applied on the virtual router
    "associateIpAddress": 3.0,
    "disassociateIpAddress": 3.0,
    "disableStaticNat": 3.0,
    "createFirewallRule": 3.0,
    "deleteFirewallRule": 3.0,
    "createLoadBalancerRule": 3.0,
    "deleteLoadBalancerRule": 3.0,
    "assignToLoadBalancerRule": 3.0,
    "removeFromLoadBalancerRule": 3.0,
    "createPortForwardingRule": 3.0,
    "deletePortForwardingRule": 3.0,
    "createIpForwardingRule": 3.0,
    "deleteIpForwardingRule": 3.0,
    # a job whose own checks (the command's execute() / the manager) refuse it ends before any agent work
    "rejected": 0.5,
}
REALISTIC_OTHER = 2.0   # an async command without a figure of its own

PROFILES: dict[str, dict[str, float]] = {"instant": {}, "realistic": REALISTIC}


class Timing:
    """Durations of one simulator: a profile, a scale factor, and an optional single override."""

    def __init__(self, profile: str = "instant", scale: float = 1.0, override: float | None = None):
        if profile not in PROFILES:
            raise ValueError(f"unknown timing profile {profile!r}: use one of {', '.join(PROFILES)}")
        if not scale >= 0:  # also refuses NaN
            raise ValueError(f"timing scale must be at least 0, not {scale!r}")
        if override is not None and not override >= 0:
            raise ValueError(f"job_seconds must be at least 0, not {override!r}")
        self.profile = profile
        self.scale = float(scale)
        self.override = None if override is None else float(override)

    def base(self, command: str, variant: str | None = None) -> float:
        """The profile's figure (unscaled) for ``command`` (and ``variant``)."""
        figures = PROFILES[self.profile]
        if not figures:
            return 0.0
        if variant is not None and f"{command}:{variant}" in figures:
            return figures[f"{command}:{variant}"]
        return figures.get(command, REALISTIC_OTHER)

    def seconds(self, command: str, variant: str | None = None) -> float:
        """How long a job of ``command`` runs here: the override when set, else the scaled profile figure."""
        if self.override is not None:
            return self.override
        return self.base(command, variant) * self.scale
