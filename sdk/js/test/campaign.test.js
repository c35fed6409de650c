import { test } from 'node:test';
import assert from 'node:assert/strict';
import { campaign } from '../src/campaign.js';

test('campaign from utm_* parameters', () => {
  const cases = [
    { search: '', want: undefined },
    { search: '?q=shoes&page=2', want: undefined },
    {
      search: '?utm_source=news&utm_medium=email&utm_campaign=spring&utm_term=shoes&utm_content=top',
      want: { name: 'spring', source: 'news', medium: 'email', term: 'shoes', content: 'top' },
    },
    { search: '?utm_campaign=spring%20sale', want: { name: 'spring sale' } },
    { search: '?utm_source=&utm_medium=cpc', want: { medium: 'cpc' } }, // empty values skipped
    { search: '?utm_name=x&utm_id=7', want: undefined }, // not Segment's keys
    { search: '?utm_source=a&utm_source=b', want: { source: 'a' } }, // first wins
  ];
  for (const c of cases) assert.deepEqual(campaign(c.search), c.want, c.search);
});
