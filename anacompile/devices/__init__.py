"""Statistical models of analog memory devices, by preset name or device file.

``get("pcm")`` returns the PCM preset :data:`PCM_JOSHI_2020` (Joshi et al., Nat. Commun. 2020; aihwkit
``PCMLikeNoiseModel``); ``get("my_device.yaml")`` loads a device file that overrides a preset. Every
device implements the :class:`Device` protocol (``program``, ``drift_exponents``, ``drift``, ``read``,
``to_dict``); conductances are in µS and times in s.
"""

from anacompile.devices._registry import DEVICE_FILE_SUFFIXES, available, get, load_device_file
from anacompile.devices.base import Device
from anacompile.devices.pcm import PCM_JOSHI_2020, PCMDevice, PCMDrift, PCMProgrammingNoise, PCMReadNoise

__all__ = [
    "DEVICE_FILE_SUFFIXES",
    "PCM_JOSHI_2020",
    "Device",
    "PCMDevice",
    "PCMDrift",
    "PCMProgrammingNoise",
    "PCMReadNoise",
    "available",
    "get",
    "load_device_file",
]
