"""Start the interface smoke node (echoes every edgesync_ros message, serves every service).

    ros2 launch edgesync_ros smoke.launch.py namespace:=robot1
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    namespace = LaunchConfiguration("namespace")
    return LaunchDescription(
        [
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the smoke node"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
            DeclareLaunchArgument("log_level", default_value="info", description="ROS log level of the node"),
            Node(package="edgesync_ros", executable="smoke_node", namespace=namespace, output="screen",
                 parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
                 ros_arguments=["--log-level", LaunchConfiguration("log_level")]),
        ]
    )
