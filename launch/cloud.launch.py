"""The fleet's cloud node.

    ros2 launch edgesync_ros cloud.launch.py
    ros2 launch edgesync_ros cloud.launch.py params_file:=/path/to/my_cloud.yaml
    ros2 launch edgesync_ros cloud.launch.py use_sim_time:=true log_level:=debug
    ros2 launch edgesync_ros cloud.launch.py discovery_server:=cloud.example.org:11888
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

#: Shipped Fast DDS profile (config/): shared memory that holds raw camera frames.
DDS_PROFILE = "fastdds_large_frames.xml"
DDS_PROFILE_HELP = ("Fast DDS XML profile of the node processes (default: $FASTDDS_DEFAULT_PROFILES_FILE, else the "
                    "shipped one, whose shared memory holds raw frames; empty: the environment is left as it is); "
                    "docs/setup.md")


def _dds_env(context):
    """FASTDDS_DEFAULT_PROFILES_FILE for a node's process: the ``dds_profile`` argument; nothing when it is empty."""
    profile = LaunchConfiguration("dds_profile").perform(context)
    return {"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else {}


def _cloud(context, *args, **kwargs):
    """The cloud node, in the Fast DDS profile chosen."""
    return [
        Node(
            package="edgesync_ros",
            executable="cloud_node",
            name="cloud_node",
            parameters=[LaunchConfiguration("params_file"), {"use_sim_time": LaunchConfiguration("use_sim_time"),
                                                             "autostart": LaunchConfiguration("autostart")}],
            ros_arguments=["--log-level", LaunchConfiguration("log_level")],
            additional_env=_dds_env(context),
            output="screen",
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("edgesync_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "discovery_server", default_value=EnvironmentVariable("ROS_DISCOVERY_SERVER", default_value=""),
                description="Fast DDS discovery server(s) HOST:PORT[;HOST:PORT] (default: $ROS_DISCOVERY_SERVER; "
                            "empty = default discovery); docs/fleet.md",
            ),
            SetEnvironmentVariable("ROS_DISCOVERY_SERVER", LaunchConfiguration("discovery_server")),
            DeclareLaunchArgument("dds_profile", description=DDS_PROFILE_HELP, default_value=EnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE", default_value=os.path.join(share, "config", DDS_PROFILE))),
            DeclareLaunchArgument(
                "params_file", default_value=os.path.join(share, "config", "cloud.yaml"),
                description="cloud_node parameters (YAML keyed /**/cloud_node)",
            ),
            DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                                  description="bring the managed node to active at start (false: leave it "
                                              "unconfigured for `ros2 lifecycle set` or a lifecycle manager)"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
            DeclareLaunchArgument("log_level", default_value="info", description="ROS log level of the node"),
            OpaqueFunction(function=_cloud),
        ]
    )
