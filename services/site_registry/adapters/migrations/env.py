from services.common.database import run_migrations_env
from services.site_registry.adapters.tables import metadata

run_migrations_env(metadata)
