"""Shared rules for schedules and sensors: they run on their own only in prod."""

import dagster as dg

from orchestration.lib.environment import Environment


def default_schedule_status(env: Environment) -> dg.DefaultScheduleStatus:
    """Schedules start RUNNING in prod; in dev and branch they exist (and can be started by hand) but are off."""
    return dg.DefaultScheduleStatus.RUNNING if env.name == "prod" else dg.DefaultScheduleStatus.STOPPED


def default_sensor_status(env: Environment) -> dg.DefaultSensorStatus:
    """Sensors start RUNNING in prod only, like schedules."""
    return dg.DefaultSensorStatus.RUNNING if env.name == "prod" else dg.DefaultSensorStatus.STOPPED
