"""C-GET and C-MOVE of the demo SCP's images (the functions live in demo.scp)."""

from findtui.demo.scp import retrieve_instance as instance
from findtui.demo.scp import retrieve_instances as instances
from findtui.demo.scp import retrieve_select as select

__all__ = ["instance", "instances", "select"]
