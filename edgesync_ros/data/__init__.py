"""Streams, packaged assets and rosbag2 files (no rclpy)."""
