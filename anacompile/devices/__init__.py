"""Statistical models of analog memory devices, by preset name or device file.

``get("pcm")`` returns the PCM preset :data:`PCM_JOSHI_2020` (Joshi et al., Nat. Commun. 2020; aihwkit
``PCMLikeNoiseModel``), ``get("rram_wan2022")`` the RRAM preset :data:`RRAM_WAN_2022` (Wan et al., Nature
2022; aihwkit ``ReRamWan2022NoiseModel``), a :class:`TableDevice` whose curves are data;
``get("my_device.yaml")`` loads a device file that overrides a preset or describes a table device. Every
device implements the :class:`Device` protocol (``program``, ``drift_exponents``, ``drift``, ``read``,
``to_dict``); conductances are in µS and times in s.
"""

from anacompile.devices._registry import DEVICE_FILE_SUFFIXES, AnyDevice, available, from_dict, get, load_device_file
from anacompile.devices.base import Device
from anacompile.devices.pcm import PCM_JOSHI_2020, PCMDevice, PCMDrift, PCMProgrammingNoise, PCMReadNoise
from anacompile.devices.table import RRAM_WAN_2022, Curve, TableDevice

__all__ = [
    "DEVICE_FILE_SUFFIXES",
    "PCM_JOSHI_2020",
    "RRAM_WAN_2022",
    "AnyDevice",
    "Curve",
    "TableDevice",
    "from_dict",
    "Device",
    "PCMDevice",
    "PCMDrift",
    "PCMProgrammingNoise",
    "PCMReadNoise",
    "available",
    "get",
    "load_device_file",
]
