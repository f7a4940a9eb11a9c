// Per-request context that reaches the repository through the router's awaits.
import { AsyncLocalStorage } from 'node:async_hooks';

export const requestContext = new AsyncLocalStorage();

/** The context of the API request being served, or undefined inside the server's own work. */
export const apiRequest = () => requestContext.getStore();
