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
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

#: Shipped Fast DDS profile (config/): shared memory that holds raw camera frames.
DDS_PROFILE = "fastdds_large_frames.xml"
DDS_PROFILE_HELP = ("Fast DDS XML profile of the node processes (default: $FASTDDS_DEFAULT_PROFILES_FILE, else the "
                    "shipped one, whose shared memory holds raw frames; empty: the environment is left as it is); "
                    "docs/setup.md")

COMPRESSED_SUFFIX = "/compressed"


def _dds_env(context):
    """FASTDDS_DEFAULT_PROFILES_FILE for a node's process: the ``dds_profile`` argument; nothing when it is empty."""
    profile = LaunchConfiguration("dds_profile").perform(context)
    return {"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else {}


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
                        {"use_sim_time": LaunchConfiguration("use_sim_time"),
                         "autostart": LaunchConfiguration("autostart")}],
            ros_arguments=["--log-level", LaunchConfiguration("log_level")],
            additional_env=_dds_env(context),
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
            DeclareLaunchArgument(
                "discovery_server", default_value=EnvironmentVariable("ROS_DISCOVERY_SERVER", default_value=""),
                description="Fast DDS discovery server(s) HOST:PORT[;HOST:PORT] (default: $ROS_DISCOVERY_SERVER; "
                            "empty = default discovery); docs/fleet.md",
            ),
            SetEnvironmentVariable("ROS_DISCOVERY_SERVER", LaunchConfiguration("discovery_server")),
            DeclareLaunchArgument("dds_profile", description=DDS_PROFILE_HELP, default_value=EnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE", default_value=os.path.join(share, "config", DDS_PROFILE))),
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
            DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                                  description="bring the managed node to active at start (false: leave it "
                                              "unconfigured for `ros2 lifecycle set` or a lifecycle manager)"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
            DeclareLaunchArgument("log_level", default_value="info", description="ROS log level of the node"),
            OpaqueFunction(function=_edge),
        ]
    )
