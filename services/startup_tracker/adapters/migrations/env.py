from services.common.database import run_migrations_env
from services.startup_tracker.adapters.tables import metadata

run_migrations_env(metadata)
