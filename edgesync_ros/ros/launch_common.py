"""The launch arguments every node launch file of the package declares alike, and what each node takes from them.

Every launch file that starts the package's nodes (``launch/*.launch.py`` but the smoke test) declares
``discovery_server`` (exported as ``ROS_DISCOVERY_SERVER`` before any node starts), ``dds_profile`` (the Fast DDS
profile of the node processes), ``autostart``, ``use_sim_time`` and ``log_level``, and hands them to its nodes the
same way; they are declared here once so their defaults and help cannot drift apart between files. Only launch files
use this module: it needs the ROS launch system, which is not on PyPI (docs/setup.md) and which ``ros2 launch``
brings with it, so the functions import it when called and the module itself imports anywhere.
"""

from __future__ import annotations

import os
from typing import Any

#: Shipped Fast DDS profile (config/): shared memory that holds raw camera frames.
DDS_PROFILE = "fastdds_large_frames.xml"
#: The environment variable Fast DDS reads its XML profile from.
DDS_PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def process_arguments(share: str) -> list[Any]:
    """Declare the shared arguments (and export ``discovery_server``); put them first in a launch description.

    ``share`` is the package's share directory, where the shipped profile lives. ``dds_profile`` defaults to
    ``$FASTDDS_DEFAULT_PROFILES_FILE``, else the shipped profile; ``discovery_server`` to ``$ROS_DISCOVERY_SERVER``.
    """
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable  # the launch system: see the module doc
    from launch.substitutions import EnvironmentVariable, LaunchConfiguration

    return [
        DeclareLaunchArgument(
            "discovery_server", default_value=EnvironmentVariable("ROS_DISCOVERY_SERVER", default_value=""),
            description="Fast DDS discovery server(s) HOST:PORT[;HOST:PORT] (default: $ROS_DISCOVERY_SERVER; "
                        "empty = default discovery); docs/fleet.md",
        ),
        SetEnvironmentVariable("ROS_DISCOVERY_SERVER", LaunchConfiguration("discovery_server")),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=EnvironmentVariable(DDS_PROFILE_ENV,
                                              default_value=os.path.join(share, "config", DDS_PROFILE)),
            description="Fast DDS XML profile of the node processes (default: $FASTDDS_DEFAULT_PROFILES_FILE, else "
                        "the shipped one, whose shared memory holds raw frames; empty: the environment is left as it "
                        "is); docs/setup.md",
        ),
        DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                              description="bring the managed nodes to active at start (false: leave them "
                                          "unconfigured for `ros2 lifecycle set` or a lifecycle manager)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level of the nodes"),
    ]


def node_parameters() -> dict[str, Any]:
    """The parameters a managed node takes from the shared arguments: ``use_sim_time`` and ``autostart``."""
    from launch.substitutions import LaunchConfiguration  # the launch system: see the module doc

    return {"use_sim_time": LaunchConfiguration("use_sim_time"), "autostart": LaunchConfiguration("autostart")}


def ros_arguments() -> list[Any]:
    """A node's ``ros_arguments`` from the shared arguments: its log level."""
    from launch.substitutions import LaunchConfiguration  # the launch system: see the module doc

    return ["--log-level", LaunchConfiguration("log_level")]


def dds_env(context: Any) -> dict[str, str]:
    """A node process's ``additional_env``: the ``dds_profile`` argument's file; nothing when the argument is empty.

    Call it from an ``OpaqueFunction`` (``context`` is the launch context), so an empty argument adds no variable.
    """
    from launch.substitutions import LaunchConfiguration  # the launch system: see the module doc

    profile = LaunchConfiguration("dds_profile").perform(context)
    return {DDS_PROFILE_ENV: profile} if profile else {}
