"""One robot's edge node.

    ros2 launch edgesync_ros edge.launch.py namespace:=robot1 camera_topic:=/robot1/camera/image_raw
    ros2 launch edgesync_ros edge.launch.py camera_topic:=/camera/image_raw/compressed image_transport:=compressed
    ros2 launch edgesync_ros edge.launch.py input_mode:=region detections_topic:=/detector/detections
    ros2 launch edgesync_ros edge.launch.py namespace:=robot1 params_file:=/path/to/my_edge.yaml
    ros2 launch edgesync_ros edge.launch.py use_sim_time:=true log_level:=debug
    ros2 launch edgesync_ros edge.launch.py namespace:=robot1 discovery_server:=cloud.example.org:11888
    ros2 launch edgesync_ros edge.launch.py dds_profile:=/etc/robot/fastdds.xml

``camera_topic`` names the camera's image topic: with ``image_transport:=compressed`` either the base topic
(``/camera/image_raw``, image_transport's ``/compressed`` suffix is added) or the ``.../compressed`` topic itself.
``input_mode`` and ``image_transport`` left empty keep the params file's values (shipped: frame, raw). The node runs
with the Fast DDS profile ``dds_profile`` names (default: ``$FASTDDS_DEFAULT_PROFILES_FILE``, else the shipped
``config/fastdds_large_frames.xml``, whose shared memory holds raw frames; start the camera driver with it too).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from edgesync_ros.ros import launch_common

COMPRESSED_SUFFIX = "/compressed"


def _edge(context, *args, **kwargs):
    """The edge node, with the input arguments given on the command line over the params file."""
    camera = LaunchConfiguration("camera_topic").perform(context)
    camera_base = camera[: -len(COMPRESSED_SUFFIX)] if camera.endswith(COMPRESSED_SUFFIX) else camera
    chosen = {name: LaunchConfiguration(name).perform(context) for name in ("input_mode", "image_transport")}
    overrides = {name: value for name, value in chosen.items() if value}
    return [
        Node(
            package="edgesync_ros",
            executable="edge_node",
            name="edge_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides,
                        launch_common.node_parameters()],
            ros_arguments=launch_common.ros_arguments(),
            additional_env=launch_common.dds_env(context),
            remappings=[
                ("image", camera),
                ("image/compressed", camera_base + COMPRESSED_SUFFIX),
                ("regions", LaunchConfiguration("regions_topic")),
                ("input_detections", LaunchConfiguration("detections_topic")),
            ],
            output="screen",
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("edgesync_ros")
    return LaunchDescription(
        [
            *launch_common.process_arguments(share),
            DeclareLaunchArgument("namespace", default_value="robot1", description="robot namespace"),
            DeclareLaunchArgument(
                "params_file", default_value=os.path.join(share, "config", "edge.yaml"),
                description="edge_node parameters (YAML keyed /**/edge_node)",
            ),
            DeclareLaunchArgument("camera_topic", default_value="image",
                                  description="camera image topic (sensor_msgs/Image, or its /compressed topic)"),
            DeclareLaunchArgument("input_mode", default_value="", choices=["", "frame", "region"],
                                  description="frame (whole frames) or region (an upstream detector's boxes); "
                                              "empty = the params file's value (shipped: frame)"),
            DeclareLaunchArgument("image_transport", default_value="", choices=["", "raw", "compressed"],
                                  description="raw (sensor_msgs/Image) or compressed (CompressedImage); "
                                              "empty = the params file's value (shipped: raw)"),
            DeclareLaunchArgument("regions_topic", default_value="regions",
                                  description="region mode: an upstream detector's edgesync_ros/RegionArray"),
            DeclareLaunchArgument("detections_topic", default_value="input_detections",
                                  description="region mode: an upstream detector's vision_msgs/Detection2DArray"),
            OpaqueFunction(function=_edge),
        ]
    )
