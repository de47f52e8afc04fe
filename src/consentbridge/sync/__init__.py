"""Sync engines: intake merge policy, forward (Didomi → Dataverse) and reverse workers."""
