// Sends real traffic to a running Vigie with real client libraries, by
// changing only their host. Usage: node send.mjs <segment|rudder> <baseURL> <writeKey>
import { Analytics } from '@segment/analytics-node'
import RudderAnalytics from '@rudderstack/rudder-sdk-node'

const [client, host, writeKey] = process.argv.slice(2)

async function segment() {
  const errors = []
  const analytics = new Analytics({ writeKey, host, flushAt: 5, flushInterval: 200, maxRetries: 2 })
  analytics.on('error', (e) => errors.push(String(e && (e.reason || e.message || e))))
  const consent = { categoryPreferences: { Analytics: true } }
  analytics.identify({ userId: 'node-user-1', traits: { plan: 'pro', email: 'node@example.org' }, context: { consent } })
  analytics.track({ userId: 'node-user-1', event: 'Node Signed Up', properties: { plan: 'pro' }, context: { consent } })
  analytics.page({ anonymousId: 'node-anon-1', name: 'Home', properties: { url: 'https://shop.example/?utm_source=node', path: '/' } })
  analytics.screen({ userId: 'node-user-1', name: 'Dashboard' })
  analytics.group({ userId: 'node-user-1', groupId: 'node-group-1', traits: { name: 'ACME' } })
  analytics.alias({ userId: 'node-user-1', previousId: 'node-anon-1' })
  await analytics.closeAndFlush({ timeout: 10000 })
  if (errors.length) { console.error('errors:', errors.join('; ')); process.exit(1) }
  console.log('segment: sent 6')
}

async function rudder() {
  const client = new RudderAnalytics(writeKey, { dataPlaneUrl: host, flushAt: 5, flushInterval: 200, maxRetries: 2, logLevel: 'error' })
  const ctx = { consent: { analytics: true } }
  client.identify({ userId: 'rs-user-1', traits: { plan: 'pro' }, context: ctx })
  client.track({ userId: 'rs-user-1', event: 'Rudder Purchased', properties: { total: 12 }, context: ctx })
  client.page({ anonymousId: 'rs-anon-1', name: 'Home', properties: { path: '/' } })
  await new Promise((resolve, reject) => client.flush((err) => (err ? reject(err) : resolve())))
  console.log('rudder: sent 3')
}

const run = client === 'rudder' ? rudder : segment
run().then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })
