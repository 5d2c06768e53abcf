"""Cloud + N namespaced robots, each fed by a camera stand-in (a packaged video with an upstream detector).

    ros2 launch edgesync_ros fleet_demo.launch.py robots:=2
    ros2 launch edgesync_ros fleet_demo.launch.py params_file:=/path/to/my_fleet.yaml log_level:=debug
    ros2 launch edgesync_ros fleet_demo.launch.py discovery_server:=127.0.0.1:11888

Robot i (robot1..robotN) plays `videos[i-1]`; by default each edge classifies the regions the shipped NanoDet finds
in JPEG frames (`input_mode:=region image_transport:=compressed`, the paper's setting); `input_mode:=frame` classifies
whole frames and `image_transport:=raw` sends sensor_msgs/Image, the camera stand-in following both. Robot 2 onwards
is darkened (`dark_brightness`) so its stream drifts and the scheduler has a robot to prefer. ``params_file`` (keys
``/**/edge_node``, ``/**/cloud_node``, ``/**/video_source``) is applied to every node after the shipped YAML, so it
overrides only the keys it names. The same nodes and YAML run without the launch system via `edgesync run` (``--set
edge_node.input_mode=region --set edge_node.image_transport=compressed`` for this file's default input).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from edgesync_ros.ros import launch_common

VIDEOS = ["bikes", "vtest", "challenge03", "project_video02", "project_video03"]


def _nodes(context, *args, **kwargs):
    config = os.path.join(get_package_share_directory("edgesync_ros"), "config")
    n = int(LaunchConfiguration("robots").perform(context))
    dark = float(LaunchConfiguration("dark_brightness").perform(context))
    user = [f for f in [LaunchConfiguration("params_file").perform(context)] if f]
    common = launch_common.node_parameters()
    ros_args = launch_common.ros_arguments()
    env = launch_common.dds_env(context)
    mode = LaunchConfiguration("input_mode").perform(context)
    transport = LaunchConfiguration("image_transport").perform(context)
    actions = [Node(package="edgesync_ros", executable="cloud_node", name="cloud_node",
                    parameters=[os.path.join(config, "cloud.yaml"), *user, common], ros_arguments=ros_args,
                    additional_env=env, output="screen")]
    for i in range(1, n + 1):
        ns = f"robot{i}"
        actions.append(Node(package="edgesync_ros", executable="edge_node", name="edge_node", namespace=ns,
                            parameters=[os.path.join(config, "edge.yaml"), *user,
                                        {"input_mode": mode, "image_transport": transport}, common],
                            ros_arguments=ros_args, additional_env=env, output="screen"))
        actions.append(Node(package="edgesync_ros", executable="video_source", name="video_source", namespace=ns,
                            parameters=[os.path.join(config, "video_source.yaml"), *user,
                                        {"video": VIDEOS[(i - 1) % len(VIDEOS)], "transport": transport,
                                         "regions": "teacher" if mode == "region" else "none",
                                         "brightness": 1.0 if i == 1 else dark,
                                         "use_sim_time": LaunchConfiguration("use_sim_time")}],
                            ros_arguments=ros_args, additional_env=env, output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("edgesync_ros")
    return LaunchDescription(
        [
            *launch_common.process_arguments(share),
            DeclareLaunchArgument("robots", default_value="2", description="number of robots"),
            DeclareLaunchArgument("input_mode", default_value="region", choices=["frame", "region"],
                                  description="edge input: whole frames, or the regions the camera stand-in's "
                                              "detector publishes"),
            DeclareLaunchArgument("image_transport", default_value="compressed", choices=["raw", "compressed"],
                                  description="camera stand-in to edge: sensor_msgs/Image or JPEG CompressedImage"),
            DeclareLaunchArgument("dark_brightness", default_value="0.35", description="brightness of robots 2..N"),
            DeclareLaunchArgument("params_file", default_value="",
                                  description="extra parameters for every node, over the shipped YAML"),
            OpaqueFunction(function=_nodes),
        ]
    )
