"""Dataverse side: Entra tokens (msal), the Web API client (httpx), bulk writes, metadata,
webhook registration and `RemoteExecutionContext` parsing."""
