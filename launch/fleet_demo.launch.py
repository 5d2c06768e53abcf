"""Cloud + N namespaced robots, each fed by a camera stand-in (a packaged video with an upstream detector).

    ros2 launch edgesync_ros fleet_demo.launch.py robots:=2

Robot i (robot1..robotN) plays `videos[i-1]`; robot 2 onwards is darkened (`dark_brightness`) so its stream drifts and
the scheduler has a robot to prefer. The same nodes and YAML run without the launch system via `edgesync run`.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

VIDEOS = ["bikes", "vtest", "challenge03", "project_video02", "project_video03"]


def _robots(context, *args, **kwargs):
    share = get_package_share_directory("edgesync_ros")
    edge_yaml = os.path.join(share, "config", "edge.yaml")
    source_yaml = os.path.join(share, "config", "video_source.yaml")
    n = int(LaunchConfiguration("robots").perform(context))
    dark = float(LaunchConfiguration("dark_brightness").perform(context))
    actions = []
    for i in range(1, n + 1):
        ns = f"robot{i}"
        actions.append(Node(package="edgesync_ros", executable="edge_node", name="edge_node", namespace=ns,
                            parameters=[edge_yaml], output="screen"))
        actions.append(Node(package="edgesync_ros", executable="video_source", name="video_source", namespace=ns,
                            parameters=[source_yaml, {"video": VIDEOS[(i - 1) % len(VIDEOS)],
                                                      "brightness": 1.0 if i == 1 else dark}],
                            output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("edgesync_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument("robots", default_value="2", description="number of robots"),
            DeclareLaunchArgument("dark_brightness", default_value="0.35", description="brightness of robots 2..N"),
            Node(package="edgesync_ros", executable="cloud_node", name="cloud_node",
                 parameters=[os.path.join(share, "config", "cloud.yaml")], output="screen"),
            OpaqueFunction(function=_robots),
        ]
    )
