"""Node-local cache plumbing (node-cache's ``-setup-interface`` / ``-setup-iptables``).

* :func:`~fastdns.nodelocal.interface.ensure_interface`: the dummy link
  carrying the local IPs (``lo`` where the kernel has no dummy driver).
* :func:`~fastdns.nodelocal.iptables.ensure_rules`: node-cache's NOTRACK and
  ACCEPT rules for each local IP.
* :class:`~fastdns.nodelocal.plumbing.NodeLocalPlumbing`: both, from the
  ``fastdns serve`` flags, undone on teardown.
"""

from fastdns.nodelocal.interface import InterfaceSetup, ensure_interface
from fastdns.nodelocal.iptables import IptablesSetup, ensure_rules, nodelocal_rules
from fastdns.nodelocal.plumbing import NodeLocalPlumbing

__all__ = [
           "InterfaceSetup",
           "IptablesSetup",
           "NodeLocalPlumbing",
           "ensure_interface",
           "ensure_rules",
           "nodelocal_rules",
]
