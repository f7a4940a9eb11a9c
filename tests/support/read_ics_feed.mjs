// Reads an iCalendar feed the way Cal.com's ICS Feed calendar app does
// (packages/app-store/ics-feedcalendar/lib/CalendarService.ts): a plain fetch without credentials,
// ICAL.parse, every VEVENT busy, a VTIMEZONE synthesized when the feed has none.
// Usage: node read_ics_feed.mjs <url>  ->  one JSON line {status, contentType, calname, events, properties}
import ICAL from 'ical.js';

const url = process.argv[2];
const response = await fetch(url);
const text = await response.text();
if (!response.ok) {
  process.stdout.write(`${JSON.stringify({ status: response.status, body: text.slice(0, 500) })}\n`);
  process.exit(0);
}
const vcalendar = new ICAL.Component(ICAL.parse(text));
const events = [];
for (const vevent of vcalendar.getAllSubcomponents('vevent')) {
  const event = new ICAL.Event(vevent);
  const dtstart = vevent.getFirstPropertyValue('dtstart');
  // Cal.com: a UTC DTSTART is read as UTC; otherwise its TZID, else the user's zone, without a VTIMEZONE.
  // (ical.js 2 marks a `…Z` time with the UTC zone; older versions with timezone 'Z'.)
  const isUtc = Boolean(dtstart) && (dtstart.timezone === 'Z' || dtstart.zone?.tzid === 'UTC');
  events.push({
    uid: event.uid,
    summary: event.summary,
    description: event.description ?? null,
    location: event.location ?? null,
    status: vevent.getFirstPropertyValue('status'),
    transp: vevent.getFirstPropertyValue('transp'),
    utc: Boolean(isUtc),
    start: event.startDate.toJSDate().toISOString(),
    end: event.endDate.toJSDate().toISOString(),
    // Every property name and value of the VEVENT: what a PHI check must look at.
    properties: vevent.getAllProperties().map((p) => [p.name, String(p.getFirstValue())]),
  });
}
process.stdout.write(`${JSON.stringify({
  status: response.status,
  contentType: response.headers.get('content-type'),
  cacheControl: response.headers.get('cache-control'),
  calname: vcalendar.getFirstPropertyValue('x-wr-calname'),
  properties: vcalendar.getAllProperties().map((p) => [p.name, String(p.getFirstValue())]),
  events,
})}\n`);
