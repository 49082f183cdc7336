"""The vector type the ports exchange (defined in the domain)."""

from skr.domain.vectors import Vector

__all__ = ["Vector"]
