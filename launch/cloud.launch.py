"""The fleet's cloud node.

    ros2 launch edgesync_ros cloud.launch.py
    ros2 launch edgesync_ros cloud.launch.py params_file:=/path/to/my_cloud.yaml
    ros2 launch edgesync_ros cloud.launch.py use_sim_time:=true log_level:=debug
    ros2 launch edgesync_ros cloud.launch.py discovery_server:=cloud.example.org:11888
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from edgesync_ros.ros import launch_common


def _cloud(context, *args, **kwargs):
    """The cloud node, in the Fast DDS profile chosen."""
    return [
        Node(
            package="edgesync_ros",
            executable="cloud_node",
            name="cloud_node",
            parameters=[LaunchConfiguration("params_file"), launch_common.node_parameters()],
            ros_arguments=launch_common.ros_arguments(),
            additional_env=launch_common.dds_env(context),
            output="screen",
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("edgesync_ros")
    return LaunchDescription(
        [
            *launch_common.process_arguments(share),
            DeclareLaunchArgument(
                "params_file", default_value=os.path.join(share, "config", "cloud.yaml"),
                description="cloud_node parameters (YAML keyed /**/cloud_node)",
            ),
            OpaqueFunction(function=_cloud),
        ]
    )
