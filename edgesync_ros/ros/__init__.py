"""ROS 2 wiring: the only sub-package that imports rclpy and the generated interfaces."""
